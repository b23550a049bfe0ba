# `cmake --install BUILD --prefix P` lays out what deploy/Dockerfile copies into the image:
#   P/bin/foxserve, P/bin/foxserve-cli
#   P/lib/foxserve/libfoxserve_sentencepiece.so   (the SentencePiece module)
#   P/share/foxserve/models/fox-pro-shakespeare/  (the default model)
# Included at the end of the top-level CMakeLists.txt, after every target exists.
#
# The module goes to lib/foxserve, not ${CMAKE_INSTALL_LIBDIR}: the loader looks for it at
# ../lib/foxserve/ from the executable (models/sentencepiece_tokenizer.h), and GNUInstallDirs would
# make that lib/x86_64-linux-gnu under /usr. The compiled-in default model path
# (FOXSERVE_DEFAULT_MODEL_DIR) points into the source tree, so installed servers are given
# --model P/share/foxserve/models/fox-pro-shakespeare explicitly (the image's ENTRYPOINT does).
install(TARGETS foxserve foxserve-cli RUNTIME DESTINATION bin COMPONENT server)
install(TARGETS foxserve_sentencepiece LIBRARY DESTINATION lib/foxserve COMPONENT server)
# Only what serving reads, plus the model card; the training logs and sweeps stay in the repo.
install(FILES
  ${PROJECT_SOURCE_DIR}/models/fox-pro-shakespeare/config.json
  ${PROJECT_SOURCE_DIR}/models/fox-pro-shakespeare/model.safetensors
  ${PROJECT_SOURCE_DIR}/models/fox-pro-shakespeare/tokenizer.model
  ${PROJECT_SOURCE_DIR}/models/fox-pro-shakespeare/README.md
  DESTINATION share/foxserve/models/fox-pro-shakespeare COMPONENT server)
