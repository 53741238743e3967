"""The controller's image store (Essex: glance) and its HTTP face for the computes."""
