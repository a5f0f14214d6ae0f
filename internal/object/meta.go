package object

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The metav1.Object view of an Object, for the informer machinery (store
// keys, resource versions, bookmarks). Fields an Object does not hold read
// as zero; an Object is never modified, so every setter panics.

func readOnly() { panic("object: an Object is read-only") }

func (o *Object) GetNamespace() string       { return o.Namespace }
func (o *Object) GetName() string            { return o.Name }
func (o *Object) GetUID() types.UID          { return o.UID }
func (o *Object) GetResourceVersion() string { return o.ResourceVersion }

// GetLabels decodes the labels into a new map.
func (o *Object) GetLabels() map[string]string {
	if o.labels.end == 0 {
		return nil
	}
	var m map[string]string
	_ = json.Unmarshal(o.raw[o.labels.start:o.labels.end], &m)
	return m
}

// GetAnnotations returns the initial-events-end annotation of a bookmark;
// other objects' annotations are in their body.
func (o *Object) GetAnnotations() map[string]string { return o.annotations }

func (o *Object) GetGenerateName() string                       { return "" }
func (o *Object) GetGeneration() int64                          { return 0 }
func (o *Object) GetSelfLink() string                           { return "" }
func (o *Object) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (o *Object) GetDeletionTimestamp() *metav1.Time            { return nil }
func (o *Object) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (o *Object) GetFinalizers() []string                       { return nil }
func (o *Object) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (o *Object) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (o *Object) SetNamespace(string)                           { readOnly() }
func (o *Object) SetName(string)                                { readOnly() }
func (o *Object) SetGenerateName(string)                        { readOnly() }
func (o *Object) SetUID(types.UID)                              { readOnly() }
func (o *Object) SetResourceVersion(string)                     { readOnly() }
func (o *Object) SetGeneration(int64)                           { readOnly() }
func (o *Object) SetSelfLink(string)                            { readOnly() }
func (o *Object) SetCreationTimestamp(metav1.Time)              { readOnly() }
func (o *Object) SetDeletionTimestamp(*metav1.Time)             { readOnly() }
func (o *Object) SetDeletionGracePeriodSeconds(*int64)          { readOnly() }
func (o *Object) SetLabels(map[string]string)                   { readOnly() }
func (o *Object) SetAnnotations(map[string]string)              { readOnly() }
func (o *Object) SetFinalizers([]string)                        { readOnly() }
func (o *Object) SetOwnerReferences([]metav1.OwnerReference)    { readOnly() }
func (o *Object) SetManagedFields([]metav1.ManagedFieldsEntry)  { readOnly() }
