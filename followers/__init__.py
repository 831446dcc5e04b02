"""The log's followers: the runner, the views it feeds, agency dispatch, the inbox and enforcement."""
