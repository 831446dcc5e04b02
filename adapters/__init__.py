"""Agency adapters: declaration events to agency XML and back, one package per agency."""
