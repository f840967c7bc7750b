"""Consumer groups, their queues and readers: scheduling only, no HTTP and no task-specific code."""
