"""Staff console (`/console/`) and resident / field-worker PWA (`/app/`): static pages and assets."""
