"""Online serving: the router over the batch path, the OpenAI surface, micro-batching."""
