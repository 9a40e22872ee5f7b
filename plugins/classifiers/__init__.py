"""Built-in classifier plugins: the networks whose decisions the explainers interpret."""
