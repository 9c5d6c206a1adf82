DROP TABLE pending_matches; DROP TABLE identity_links; DROP TABLE identities; DROP TABLE id_mappings;
