"""What the service and the trainer agree on: Redis keys, the feedback event, the model
artifact contract, the user encoder and the errors. Imports neither fastapi nor torch."""
