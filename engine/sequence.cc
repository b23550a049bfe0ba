#include "engine/sequence.h"

namespace foxserve {
namespace engine {

Sequence::Sequence(uint64_t id, GenerationRequest request_in, std::shared_ptr<RequestSink> sink,
                   std::unique_ptr<models::SequenceKvState> kv,
                   std::unique_ptr<models::IncrementalDecoder> decoder, int64_t num_layers,
                   int64_t num_heads)
    : id(id),
      request(std::move(request_in)),
      sink(std::move(sink)),
      tokens(request.prompt),
      num_prompt_tokens(static_cast<int64_t>(request.prompt.size())),
      kv(std::move(kv)),
      sampler(request.sampling, request.prompt),
      decoder(std::move(decoder)),
      stop_strings(request.stop),
      acp(num_layers, num_heads) {}

}  // namespace engine
}  // namespace foxserve
