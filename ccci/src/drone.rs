//! Typed client for the Drone 2.x API routes cc-ci uses.
