"""What jindr does, as plain functions over a passed-in client: rows in, rows out, no printing."""
