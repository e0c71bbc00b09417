"""Built-in simulator plugins that run circuits for QServer's executors."""
