"""The parts of the page: the live view of one job and the history of all jobs."""
