//! B.A.T.M.A.N. TQ in the log domain.
