"""The ground every process stands on: settings, the installations file reader, Redis key names,
connections, job envelopes, logging and shared metrics. It imports none of the other packages."""
