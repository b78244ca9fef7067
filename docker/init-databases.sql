-- Separate databases for Airflow's metadata and for the warehouse (run once by the postgres image).
CREATE DATABASE airflow;
CREATE DATABASE warehouse;
