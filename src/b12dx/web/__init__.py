"""The web adapter: a FastAPI app with the patient check, the clinician view and the JSON
API. Like the CLI it only translates and calls the engine."""
