"""Running the connector: the CLI, doctor, simulate, the server, its HTTP front and web routes, logs."""
