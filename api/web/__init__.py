"""The web pages: the counter, the warehouse, quality and the inspector, served by the API itself."""
