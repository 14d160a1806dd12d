//! The IKEv2 control plane lives here (see ARCHITECTURE.md). Until it exists, SAs are keyed
//! by hand in the dataplane's config file.
