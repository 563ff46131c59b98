"""The synthesis worker: Celery tasks over plain functions, and the engines behind them."""
