"""What the API and the synthesis worker share: settings, schemas, keys, the job store, storage."""
