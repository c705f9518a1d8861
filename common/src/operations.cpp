// placeholder: implementation lands with the core commit
