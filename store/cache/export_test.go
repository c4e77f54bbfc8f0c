package cache

// GrantEntries is the number of grants c holds, for the external tests'
// bound on the cache's size.
func GrantEntries(c *Cache) int { return c.grants.len() }

// WaitRefreshes waits for the background re-reads c has started.
func WaitRefreshes(c *Cache) { c.background.Wait() }
