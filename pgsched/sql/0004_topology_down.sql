-- Undoes 0004_topology.sql (sync then needs the code of revision 0003 again).
DROP TABLE IF EXISTS {schema}.sync_lock;
