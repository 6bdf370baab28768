"""Online inference benchmark: flywheel's gateway vs FastAPI + uvicorn vs `mlflow models serve`."""
