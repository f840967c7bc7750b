"""Loading models and the task adapters that turn inputs into features and model outputs into results."""
