-- One database per service: no service can read another's tables (ARCHITECTURE.md, Storage).
CREATE DATABASE hush_control;
CREATE DATABASE hush_membership;
CREATE DATABASE hush_bulk;
CREATE DATABASE hush_tenant;
