DROP TABLE install_states; DROP TABLE auth_codes; DROP TABLE tokens; DROP TABLE leases; DROP TABLE events; DROP TABLE corps; DROP TABLE suites; DROP TABLE providers;
