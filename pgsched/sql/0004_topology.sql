-- pgsched schema, version 0004 (migrations/versions/0004_topology.py).
-- Sync serialises on a lock of this table (queries.sql: lock_sync). It replaces a global advisory
-- key that any role able to connect, the reader role included, could hold to block every
-- runner's start. LOCK TABLE ... IN EXCLUSIVE MODE needs UPDATE, DELETE or TRUNCATE on the
-- table, which only the owner and `pgsched grant runner` roles have. It holds no rows.
CREATE TABLE {schema}.sync_lock ();
COMMENT ON TABLE {schema}.sync_lock IS
    'pgsched: locked by every sync (LOCK TABLE ... IN EXCLUSIVE MODE); holds no rows';

-- Roles granted `runner` before this revision (UPDATE on jobs) sync too: give them the lock.
DO $$
DECLARE role_name text;
BEGIN
    FOR role_name IN
        SELECT DISTINCT r.rolname
        FROM pg_class c
        CROSS JOIN LATERAL aclexplode(c.relacl) acl
        JOIN pg_roles r ON r.oid = acl.grantee
        WHERE c.oid = '{schema}.jobs'::regclass AND acl.privilege_type = 'UPDATE'
          AND acl.grantee <> c.relowner
    LOOP
        EXECUTE 'GRANT UPDATE ON TABLE {schema}.sync_lock TO ' || quote_ident(role_name);
    END LOOP;
END $$;
