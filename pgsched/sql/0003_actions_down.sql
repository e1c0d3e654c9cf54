-- Undoes 0003_actions.sql (the ledger of operators' actions goes with it).
DROP TABLE IF EXISTS {schema}.actions;
