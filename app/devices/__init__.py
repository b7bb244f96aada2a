"""Device CRUD, SSH key upload and generation, secrets at rest."""
