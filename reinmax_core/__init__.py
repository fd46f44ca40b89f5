"""What both backends share and neither needs an array library for."""
