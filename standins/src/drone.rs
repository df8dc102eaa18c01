//! Stand-in Drone 2.x server.
