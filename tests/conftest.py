"""Settings shared by every test: quiet TensorFlow, and no test writes to the real stores."""

import os

# Before TensorFlow is imported anywhere: its C++ start-up lines would fill the test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("MLFLOW_TRACKING_URI", None)
