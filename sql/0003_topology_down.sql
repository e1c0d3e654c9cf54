-- Undoes 0003_topology.sql (sync then needs the code of revision 0002 again).
DROP TABLE IF EXISTS {schema}.sync_lock;
