"""Pure nn.Modules and decoding. Nothing here imports training code."""
