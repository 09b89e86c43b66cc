//! Links sent by mail (STUB: being written).
