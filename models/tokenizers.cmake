# Tokenizers of foxserve_models (included from models/CMakeLists.txt): SentencePiece and GPT-2
# byte-level BPE, the LongCrawl64 JSON-escape convention, and LoadTokenizer.
# sentencepiece_tokenizer.cc is the only file that may include SentencePiece headers: Debian's
# sentencepiece_processor.h declares its own absl::string_view, which clashes with Abseil's.
target_sources(foxserve_models PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/bpe_files.cc
  ${CMAKE_CURRENT_LIST_DIR}/bpe_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/gpt2_pretokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/json_escape.cc
  ${CMAKE_CURRENT_LIST_DIR}/json_escape_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/sentencepiece_adapter.cc
  ${CMAKE_CURRENT_LIST_DIR}/sentencepiece_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_factory.cc
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_files.cc
  ${CMAKE_CURRENT_LIST_DIR}/unicode_text.cc
)
target_link_libraries(foxserve_models PRIVATE ICU::uc PkgConfig::SENTENCEPIECE
                      nlohmann_json::nlohmann_json)
