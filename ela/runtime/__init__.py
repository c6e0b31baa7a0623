"""What runs the model: data, models, device and precision, engines, attention kernels, the Hub."""
