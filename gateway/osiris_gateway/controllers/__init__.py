"""Route controllers, one module per resource."""
