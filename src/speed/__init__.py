"""Speed: timing of our models and of their peers."""
