//! Likelihoods and predictions of the candidate models against independent references.
