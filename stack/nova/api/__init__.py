"""nova-api's two faces: the compute API (``nova.compute.api``) and the EC2 metadata service."""
