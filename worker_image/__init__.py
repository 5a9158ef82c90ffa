"""The worker image's files; installed as hyperbatch.worker_image so local mode runs start.sh from any install."""
