# Included from tests/models/CMakeLists.txt.
foxserve_add_test(safetensors_test SOURCES safetensors_test.cc LIBS foxserve_models)
