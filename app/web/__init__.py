"""Staff console (`/console/`) and resident / field-worker PWA (`/app/`): pages and assets."""
