# The safetensors reader/writer (safetensors.h) and the MappedFile it reads through; included
# from models/CMakeLists.txt.
target_sources(foxserve_models PRIVATE
  mapped_file.cc
  safetensors.cc
  safetensors_header.cc
)
target_link_libraries(foxserve_models PRIVATE nlohmann_json::nlohmann_json)
