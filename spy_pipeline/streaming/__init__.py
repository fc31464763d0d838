"""Live streaming of Polygon minute aggregates: micro-batches, the session loop, and the after-close compaction.

No Dagster here: the job and sensors wrap these functions.
"""
