"""Online inference benchmark: flywheel vs plain Serve (Python proxy, HAProxy) vs FastAPI + uvicorn
vs `mlflow models serve`, with the load generator's own ceiling (see cli.py)."""
