# Tokenizers of foxserve_models (included from models/CMakeLists.txt): SentencePiece and GPT-2
# byte-level BPE, the LongCrawl64 JSON-escape convention, and LoadTokenizer.
# SentencePiece lives in its own module, libfoxserve_sentencepiece (sentencepiece_module.cc, the
# only file that includes its headers), loaded at run time with deep binding: see
# sentencepiece_module_api.h for why it cannot be linked into the process like other libraries.
target_sources(foxserve_models PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/bpe_files.cc
  ${CMAKE_CURRENT_LIST_DIR}/bpe_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/gpt2_pretokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/incremental_decoder.cc
  ${CMAKE_CURRENT_LIST_DIR}/json_escape.cc
  ${CMAKE_CURRENT_LIST_DIR}/json_escape_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/sentencepiece_adapter.cc
  ${CMAKE_CURRENT_LIST_DIR}/sentencepiece_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_factory.cc
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_files.cc
  ${CMAKE_CURRENT_LIST_DIR}/unicode_text.cc
)
target_link_libraries(foxserve_models PRIVATE ICU::uc nlohmann_json::nlohmann_json ${CMAKE_DL_LIBS})

add_library(foxserve_sentencepiece MODULE ${CMAKE_CURRENT_LIST_DIR}/sentencepiece_module.cc)
target_include_directories(foxserve_sentencepiece PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(foxserve_sentencepiece PRIVATE PkgConfig::SENTENCEPIECE)
set_target_properties(foxserve_sentencepiece PROPERTIES CXX_VISIBILITY_PRESET hidden
                      VISIBILITY_INLINES_HIDDEN ON)
add_dependencies(foxserve_models foxserve_sentencepiece)
target_compile_definitions(foxserve_models PRIVATE
  FOXSERVE_SENTENCEPIECE_MODULE_PATH="$<TARGET_FILE:foxserve_sentencepiece>")
