"""initlab: see what a weight-initialization scheme does to a PyTorch network."""
