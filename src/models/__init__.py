"""Pure nn.Modules (the decoding protocols they implement: src/decoding/). Nothing here imports training or
decoding code."""
